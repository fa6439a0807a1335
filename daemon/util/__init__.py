"""Small helpers shared by the subsystems: filters, time, streams between threads and the loop."""
