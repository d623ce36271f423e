//! HTTP/1.x sans-I/O parser.
