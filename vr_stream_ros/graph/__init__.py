"""The node graph: parameter specs, each node's parameters, launch descriptions, make run."""
