"""The embedded local stack, provider emulator and `i2v` CLI; never deployed."""
