"""Where stage changes go: each destination sends deliveries and says what became of them."""
