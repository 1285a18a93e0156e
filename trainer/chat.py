"""The tiny policy's chat format and helpers to render prompts for generation and scoring."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from .data import Text, as_messages, message_text

USER, ASSISTANT, SYSTEM, END, PAD = "<|user|>", "<|assistant|>", "<|system|>", "<|end|>", "<|pad|>"
SPECIAL_TOKENS = [PAD, END, USER, ASSISTANT, SYSTEM]

# <|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n   (the eos token is <|end|>)
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def has_chat_template(tok: PreTrainedTokenizerBase) -> bool:
    return bool(getattr(tok, "chat_template", None))


def render_prompt(tok: PreTrainedTokenizerBase, prompt: Text) -> str:
    """Prompt text ready for generation (chat template with generation prompt when there is one)."""
    if has_chat_template(tok):
        return tok.apply_chat_template(
            as_messages(prompt, "user"), tokenize=False, add_generation_prompt=True
        )
    return message_text(prompt)


def encode_pair(tok: PreTrainedTokenizerBase, prompt: Text, response: Text, max_length: int) -> list[int]:
    """Token ids of prompt + response for reward scoring, keeping the response and the end of the prompt.

    With a chat template the conversation is rendered by it; otherwise (e.g. a BERT backbone) the
    prompt and response are encoded as a text pair (``[CLS] prompt [SEP] response [SEP]``), or as
    ``prompt response <eos>`` for tokenizers without CLS/SEP.
    """
    if has_chat_template(tok):
        p_text = render_prompt(tok, prompt)
        full = tok.apply_chat_template(
            as_messages(prompt, "user") + as_messages(response, "assistant"), tokenize=False
        )
        r_text = full[len(p_text) :] if full.startswith(p_text) else message_text(response)
        p_ids = tok(p_text, add_special_tokens=False)["input_ids"]
        r_ids = tok(r_text, add_special_tokens=False)["input_ids"]
        n_special = 0
    else:
        p_ids = tok(_transcript(prompt), add_special_tokens=False)["input_ids"]
        r_ids = tok(message_text(response), add_special_tokens=False)["input_ids"]
        n_special = 3 if tok.cls_token_id is not None and tok.sep_token_id is not None else 1
    budget = max_length - n_special
    r_ids = r_ids[: max(budget * 3 // 4, budget - len(p_ids))]
    p_ids = p_ids[max(0, len(p_ids) - (budget - len(r_ids))) :]
    if n_special == 3:
        return [tok.cls_token_id, *p_ids, tok.sep_token_id, *r_ids, tok.sep_token_id]
    if n_special == 1:
        return p_ids + r_ids + ([tok.eos_token_id] if tok.eos_token_id is not None else [])
    return p_ids + r_ids


def _transcript(prompt: Text) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m['role']}: {m['content']}" for m in prompt)
