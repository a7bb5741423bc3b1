"""WikiText-2 next-token prediction (Golechha et al. 2025, Appendix E/F: modular language models, ON
interventions on next-token predictions); see ``wiki_tokens_impl`` for the data, read-out and pairs."""

from modbench.registries import register_task
from modbench.tasks.configs import WikiTokensConfig

register_task("wiki_tokens", WikiTokensConfig(),
              "WikiText-2 next-token prediction at every position, 4,096-word vocabulary, 64-token windows; "
              "a pretrained model brings its own tokenizer", factory="modbench.tasks.wiki_tokens_impl:WikiTokensTask",
              reads="classes")
