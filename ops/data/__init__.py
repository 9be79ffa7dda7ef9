"""What holds data: bgsave, backup and restore (sharing one backup format), flush-results."""
