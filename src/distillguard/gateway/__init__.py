"""The inline gateway (`distillguard serve`): an OpenAI-compatible proxy that runs the inline
signals on every call, applies the enforcement policy, protects reasoning and logs every call."""
