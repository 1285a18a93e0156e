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


LAYOUTS = ("prompt_first", "response_first", "response_only")


def encode_pair(
    tok: PreTrainedTokenizerBase,
    prompt: Text,
    response: Text,
    max_length: int,
    layout: str = "prompt_first",
) -> list[int]:
    """Token ids of prompt + response for reward scoring; the response is kept whole when it fits.

    With a chat template the conversation is rendered by it (``layout`` does not apply: a causal
    backbone scores the last token, so the response must come last). Otherwise (e.g. a BERT
    backbone) the pair is a text pair: ``layout="prompt_first"`` gives ``[CLS] prompt [SEP]
    response [SEP]`` (the end of a long prompt is kept), ``"response_first"`` gives ``[CLS]
    response [SEP] prompt [SEP]`` (the prompt's end, i.e. the last user turn, fills what room is
    left), ``"response_only"`` gives ``[CLS] response [SEP]``. Tokenizers without CLS/SEP get
    ``prompt response <eos>``.
    """
    return encode_pairs(tok, [prompt], [response], max_length, layout)[0]


def encode_pairs(
    tok: PreTrainedTokenizerBase,
    prompts: list[Text],
    responses: list[Text],
    max_length: int,
    layout: str = "prompt_first",
) -> list[list[int]]:
    """``encode_pair`` for many pairs at once (same ids): each distinct prompt is rendered and
    tokenized once, and the tokenizer runs batched."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if has_chat_template(tok):
        cache: dict[str, str] = {}
        p_texts, r_texts = [], []
        for prompt, response in zip(prompts, responses, strict=True):
            key = repr(prompt)
            if key not in cache:
                cache[key] = render_prompt(tok, prompt)
            p_text = cache[key]
            full = tok.apply_chat_template(
                as_messages(prompt, "user") + as_messages(response, "assistant"), tokenize=False
            )
            p_texts.append(p_text)
            r_texts.append(full[len(p_text) :] if full.startswith(p_text) else message_text(response))
        n_special = 0
    else:
        r_texts = [message_text(r) for r in responses]
        n_special = 3 if tok.cls_token_id is not None and tok.sep_token_id is not None else 1
        response_only = n_special == 3 and layout == "response_only"  # the prompt is not read
        p_texts = [""] * len(prompts) if response_only else [_transcript(p) for p in prompts]
    encoder_layout = layout if n_special == 3 else "prompt_first"
    unique = list(dict.fromkeys(p_texts))
    p_map = dict(zip(unique, tok(unique, add_special_tokens=False)["input_ids"], strict=True))
    r_all = tok(r_texts, add_special_tokens=False)["input_ids"] if r_texts else []
    budget = max_length - n_special
    out = []
    for p_text, r_ids in zip(p_texts, r_all, strict=True):
        p_ids = p_map[p_text]
        if encoder_layout == "prompt_first":
            r_ids = r_ids[: max(budget * 3 // 4, budget - len(p_ids))]
        else:  # the response first and whole (up to the budget); the prompt's end fills the rest
            r_ids = r_ids[:budget]
        p_ids = p_ids[max(0, len(p_ids) - (budget - len(r_ids))) :]
        if encoder_layout == "response_only":
            out.append([tok.cls_token_id, *r_ids, tok.sep_token_id])
        elif encoder_layout == "response_first":
            tail = [*p_ids, tok.sep_token_id] if p_ids else []
            out.append([tok.cls_token_id, *r_ids, tok.sep_token_id, *tail])
        elif n_special == 3:
            out.append([tok.cls_token_id, *p_ids, tok.sep_token_id, *r_ids, tok.sep_token_id])
        elif n_special == 1:
            out.append(p_ids + r_ids + ([tok.eos_token_id] if tok.eos_token_id is not None else []))
        else:
            out.append(p_ids + r_ids)
    return out


def _transcript(prompt: Text) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m['role']}: {m['content']}" for m in prompt)
