"""Day-2 commands (`m3stripe get|runs|events|sync|resolve|replay|reenable`, also `kubectl m3stripe ...`).

They read and annotate StripeIntegrations through the official `kubernetes` client, with the
kubeconfig as kubectl uses it, and wait for the operator to echo each gesture in status.
"""
