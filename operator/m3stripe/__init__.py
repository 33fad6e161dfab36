"""Send m3ter Bills to Stripe from Kubernetes: the StripeIntegration operator."""
