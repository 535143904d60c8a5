"""The shared kernel: the value types and rules every service uses alike — errors and their reasons, money,
addresses, delivery windows, the request field rules (``kernel.validation``) and who is calling
(``kernel.caller``). Pure Python, no I/O: model/ and biz/ of every service may import it. It imports nothing of
Kassa's own (import contract)."""
