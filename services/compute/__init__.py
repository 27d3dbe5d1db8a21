"""The compute service: bids on jobs, runs them with its executors, publishes results."""
