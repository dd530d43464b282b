"""The application: one Settings, context built from it, serving."""
