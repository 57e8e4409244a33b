"""Built-in data sets and the plumbing that turns any map-style data set into batches."""
