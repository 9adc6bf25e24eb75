#!/usr/bin/python3
"""make_tokenizer_fixture — writes tests/data/tokenizer_gpt2like.json, the
small hand-written tokenizer the tokenizer tests use next to a trained one.

GPT-2 shape: ByteLevel pre-tokenizer with its built-in regex, no normalizer,
merges in the newer ["a", "b"] pair form, the 256 byte characters numbered in
code-point order (not byte order, unlike dm_bpe_train), a hand-picked merge
list (English, code indentation, digits, one CJK character, one emoji, and
"abc" reachable by two merges), and added tokens that exercise special /
non-special, lstrip, rstrip and single_word. Run it from the repository root
to regenerate the file; the output is deterministic.
"""
import json
import sys

sys.path.insert(0, "tests/reference")
from tokenizer_ref import bytes_to_unicode  # noqa: E402

B2U = bytes_to_unicode()


def bl(text):
    return "".join(B2U[b] for b in text.encode("utf-8"))


# (left, right) as plain text; each side must already be a token.
MERGES = [
    (" ", "t"), (" ", "a"), ("h", "e"), ("i", "n"), ("r", "e"), ("o", "n"), (" t", "he"), ("e", "r"),
    (" ", "s"), ("a", "t"), (" ", "w"), (" ", "o"), ("e", "n"), (" ", "c"), ("i", "t"), ("i", "s"),
    ("a", "n"), ("o", "r"), ("e", "s"), (" ", "b"), ("e", "d"), (" ", "f"), ("in", "g"), (" ", "p"),
    ("o", "u"), (" a", "n"), ("a", "l"), ("a", "r"), (" t", "o"), (" ", "m"), (" o", "f"), (" ", "in"),
    (" ", "d"), (" ", "h"), (" an", "d"), (" ", " "), ("  ", "  "), ("\n", "    "), ("d", "e"), ("de", "f"),
    ("e", "t"), ("r", "et"), ("u", "r"), ("ret", "ur"), ("retur", "n"), ("1", "2"), ("12", "3"), (" ", "1"),
    ("x", "y"),
    ("a", "b"), ("b", "c"), ("ab", "c"), ("a", "bc"), ("T", "he"), ("\n", "\n"), (".", "\n"),
    (" ", "("), ("(", ")"), (" ", "="), ("e", "l"), ("el", "f"), ("s", "elf"), ("s", "el"),
]

# bytes of one CJK character and one emoji, merged byte by byte
for text in ("\u4e2d", "\U0001F600"):
    raw = text.encode("utf-8")
    for k in range(1, len(raw)):
        MERGES.append((raw[:k].decode("latin-1"), raw[k:k + 1].decode("latin-1")))


def token_of(side):
    """A merge side as a ByteLevel token: plain text, or latin-1-escaped raw bytes."""
    try:
        side.encode("ascii")
        return bl(side)
    except UnicodeEncodeError:
        return "".join(B2U[ord(c)] for c in side)


def main():
    alphabet = sorted(B2U.values())
    vocab = {c: i for i, c in enumerate(alphabet)}
    merges = []
    for a, b in MERGES:
        ta, tb = token_of(a), token_of(b)
        assert ta in vocab and tb in vocab, (a, b)
        merges.append([ta, tb])
        if ta + tb not in vocab:
            vocab[ta + tb] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)   # also an added token, same id (as GPT-2)
    n = len(vocab)
    added = [
        (vocab["<|endoftext|>"], "<|endoftext|>", dict(special=True)),
        (n + 0, "<think>", dict(special=True)),
        (n + 1, "</think>", dict(special=True)),
        (n + 2, "<|user|>", dict(special=True)),
        (n + 3, "<mask>", dict(special=True, lstrip=True)),
        (n + 4, "<sep>", dict(special=True, rstrip=True)),
        (n + 5, "hello", dict(special=False, single_word=True, normalized=True)),
        (n + 6, "[[note]]", dict(special=False, normalized=False)),
        (n + 7, "<think>x", dict(special=False, normalized=False)),
    ]
    added_json = []
    for tid, content, flags in added:
        d = dict(id=tid, content=content, single_word=False, lstrip=False, rstrip=False,
                 normalized=not flags.get("special", False), special=False)
        d.update(flags)
        added_json.append(d)
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added_json,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": vocab, "merges": merges},
    }
    with open("tests/data/tokenizer_gpt2like.json", "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
