"""The tests' scaffolding, one family for every layer: the worlds the tests stand in (`world`: the m3ter and Stripe
emulators with the official SDKs' clients; `engine_world`, `tax_world` and `kube_world` on top of it; `stack_world`
for the end-to-end tests' local stack), the one hand-moved clock (`clock`) and the one free-port helper (`ports`)."""
