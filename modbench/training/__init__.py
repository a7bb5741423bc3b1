"""The one training loop (``trainer``), its config (``config``) and the trained-model cache (``checkpoint``)."""
