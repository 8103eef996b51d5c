"""The lecture's model progression, one module per version; each shows only what it changes."""
