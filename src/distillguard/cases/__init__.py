"""Cases: the evidence on one actor (or account) that people review and decide on."""
