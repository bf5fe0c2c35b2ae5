"""Sharing actor indicators with trusted peers: keyed hashes out as STIX 2.1 over TAXII 2.1, peers'
indicators in as watch entries that hold a returning actor's new accounts for review."""
