"""MedGemma, the explainer stage: the backend (transformers), its GGUF twin (llama.cpp), the prompt and the
parsing of its output."""
