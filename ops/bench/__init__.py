"""`invoke bench`: the deployment measured on real containers, each figure beside its baseline."""
