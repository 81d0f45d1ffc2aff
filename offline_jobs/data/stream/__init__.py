"""Training samples on disk, read one chunk of rows at a time, so that training memory does not
grow with the number of samples: the format (`format`), writing (`store_writer`), opening and
reading (`store`), training batches (`samples`) and shuffling on disk (`shuffle`)."""
