"""The requester service: takes jobs, runs bidding, verification and publication."""
