#!/usr/bin/python3
"""tokenizer_ref — an independent byte-level BPE encoder for tokenizer.json
files: the oracle the C tokenizer's tests compare against.

Written from the Hugging Face `tokenizers` semantics, deliberately in a
different shape from src/tokenizer (lists instead of streams, the literal
fold of NormalizedString::split for the Split behaviours, and BPE as "merge
the lowest-rank, leftmost adjacent pair, one at a time" instead of a heap):

  1. added tokens with normalized=false are found in the raw text
     (leftmost-longest; single_word, lstrip, rstrip; special tokens are
     skipped, their text left as plain text, unless specials are allowed);
  2. each remaining piece is NFC-normalized (if the file says so) and the
     normalized=true added tokens are found in it;
  3. the pre-tokenizer steps run in order (Split: regex or literal string,
     behaviour, invert; ByteLevel: add_prefix_space, use_regex with the GPT-2
     pattern), then every piece becomes ByteLevel characters and BPE runs.

Invalid UTF-8 is allowed, with demolish's rule (the tokenizers library only
takes valid strings): the input is decoded with surrogateescape, so each
invalid byte is a lone surrogate U+DC80..U+DCFF; NFC and every regex step
only see maximal runs without such surrogates, and a run of them is kept as
a piece of its own. Empty regex matches are skipped (search again one
character later).

Usage: tokenizer_ref.py TOKENIZER_JSON CASES
  CASES: one case per line, "<allow_special 0|1> <text as hex>".
  Prints one line per case: the token ids separated by spaces.
Needs the `regex` module (Debian: python3-regex) for \\p{L} and friends.
"""
import json
import sys
import unicodedata

try:
    import regex
except ImportError:
    sys.exit("tokenizer_ref.py: the `regex` module is missing (apt-get install python3-regex)")

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# Unicode White_Space: what \s means for the library's (Rust) regexes.
WHITE_SPACE = set(
    [chr(c) for c in range(0x09, 0x0E)]
    + [" ", "\x85", "\xa0", "\u1680", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000"]
    + [chr(c) for c in range(0x2000, 0x200B)]
)

INVALID_RUN = regex.compile(r"[\udc80-\udcff]+|[^\udc80-\udcff]+")


def bytes_to_unicode():
    """GPT-2's table: printable Latin-1 bytes keep their code point, the
    other 68 bytes get U+0100 onwards in byte order."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def is_word_char(ch):
    """Rust regex \\w: letters, marks, Nd, Nl, Pc, ZWNJ/ZWJ."""
    cat = unicodedata.category(ch)
    return cat[0] in "LM" or cat in ("Nd", "Nl", "Pc") or ch in "\u200c\u200d"


def runs(text):
    """(run, is_valid) for the maximal runs of valid text and of escaped bytes."""
    for m in INVALID_RUN.finditer(text):
        s = m.group(0)
        yield s, not ("\udc80" <= s[0] <= "\udcff")


class AddedToken:
    def __init__(self, j, nfc):
        self.id = j["id"]
        self.content = j["content"]
        self.special = j.get("special", False)
        self.single_word = j.get("single_word", False)
        self.lstrip = j.get("lstrip", False)
        self.rstrip = j.get("rstrip", False)
        self.normalized = j.get("normalized", not self.special)
        self.match = unicodedata.normalize("NFC", self.content) if (self.normalized and nfc) else self.content


class RefTokenizer:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            j = json.load(f)
        model = j["model"]
        assert model.get("type", "BPE") == "BPE"
        self.vocab = model["vocab"]
        self.ranks = {}
        for i, m in enumerate(model.get("merges") or []):
            if isinstance(m, str):
                parts = m.split(" ")
                assert len(parts) == 2, m
                a, b = parts
            else:
                a, b = m
            self.ranks[(a, b)] = i
        self.ignore_merges = bool(model.get("ignore_merges"))
        self.nfc = self._normalizer(j.get("normalizer"))
        tokens = [AddedToken(a, self.nfc) for a in (j.get("added_tokens") or []) if a["content"]]
        self.raw_tokens = self._by_first_char([t for t in tokens if not t.normalized])
        self.norm_tokens = self._by_first_char([t for t in tokens if t.normalized])
        self.steps = []
        self._pretokenizer(j["pre_tokenizer"])
        self.b2u = bytes_to_unicode()
        self.cache = {}

    def _normalizer(self, n):
        if n is None:
            return False
        if n["type"] == "NFC":
            return True
        assert n["type"] == "Sequence", n
        return any(self._normalizer(x) for x in n["normalizers"])

    def _pretokenizer(self, p):
        if p["type"] == "Sequence":
            for x in p["pretokenizers"]:
                self._pretokenizer(x)
        elif p["type"] == "Split":
            pat = p["pattern"]
            src = pat["Regex"] if "Regex" in pat else regex.escape(pat["String"])
            self.steps.append(("split", regex.compile(src), p["behavior"], p.get("invert", False), False))
        else:
            assert p["type"] == "ByteLevel", p
            rx = regex.compile(GPT2_PATTERN) if p.get("use_regex", True) else None
            self.steps.append(("bytelevel", rx, "Isolated", False, p.get("add_prefix_space", True)))

    @staticmethod
    def _by_first_char(tokens):
        d = {}
        for t in tokens:
            d.setdefault(t.match[0], []).append(t)
        for lst in d.values():   # longest first; for equal text the later entry wins
            lst.reverse()
            lst.sort(key=lambda t: -len(t.match))
        return d

    # ---- added tokens (AddedVocabulary::find_matches) ----

    def _split_added(self, text, tokens, allow_special):
        out, start_off, i, n = [], 0, 0, len(text)
        while i < n:
            tok = next((t for t in tokens.get(text[i], ()) if text.startswith(t.match, i)), None)
            if tok is None:
                i += 1
                continue
            start, stop = i, i + len(tok.match)
            i = stop
            if tok.special and not allow_special:
                continue
            if tok.single_word:
                if (start > 0 and is_word_char(text[start - 1])) or (stop < n and is_word_char(text[stop])):
                    continue
            if tok.lstrip:
                s = start
                while s > 0 and text[s - 1] in WHITE_SPACE:
                    s -= 1
                start = max(s, start_off)
            if tok.rstrip:
                while stop < n and text[stop] in WHITE_SPACE:
                    stop += 1
            if start_off < start:
                out.append((None, text[start_off:start]))
            out.append((tok.id, None))
            start_off = stop
        if start_off < n:
            out.append((None, text[start_off:]))
        return out

    # ---- pre-tokenizers ----

    @staticmethod
    def _find_matches(rx, text):
        """(start, end, is_match) covering text, as Pattern::find_matches."""
        segs, prev, pos = [], 0, 0
        while pos < len(text):
            m = rx.search(text, pos)
            if not m:
                break
            if m.end() == m.start():
                pos = m.start() + 1
                continue
            if prev < m.start():
                segs.append((prev, m.start(), False))
            segs.append((m.start(), m.end(), True))
            prev = pos = m.end()
        if prev < len(text):
            segs.append((prev, len(text), False))
        return segs

    @staticmethod
    def _apply_behavior(segs, behavior):
        """The fold of NormalizedString::split, on (start, end, is_match)."""
        if behavior == "Isolated":
            return [(a, b) for a, b, _ in segs]
        if behavior == "Removed":
            return [(a, b) for a, b, m in segs if not m]
        acc, prev_match = [], False
        order = reversed(segs) if behavior == "MergedWithNext" else segs
        for a, b, m in order:
            if behavior == "Contiguous":
                join = m == prev_match
            else:
                join = m and not prev_match
            if join and acc:
                if behavior == "MergedWithNext":
                    acc[-1] = (a, acc[-1][1])
                else:
                    acc[-1] = (acc[-1][0], b)
            else:
                acc.append((a, b))
            prev_match = m
        if behavior == "MergedWithNext":
            acc.reverse()
        return acc

    def _pretokenize(self, piece):
        pieces = [piece]
        for kind, rx, behavior, invert, prefix in self.steps:
            new = []
            for p in pieces:
                if prefix and not p.startswith(" "):
                    p = " " + p
                if rx is None:
                    new.append(p)
                    continue
                for run, valid in runs(p):
                    if not valid:
                        new.append(run)
                        continue
                    segs = [(a, b, m != invert) for a, b, m in self._find_matches(rx, run)]
                    new.extend(run[a:b] for a, b in self._apply_behavior(segs, behavior))
            pieces = [p for p in new if p]
        return pieces

    # ---- BPE (Word::merge_all without the heap) ----

    def _bpe(self, piece):
        raw = piece.encode("utf-8", "surrogateescape")
        word = "".join(self.b2u[b] for b in raw)
        if self.ignore_merges and word in self.vocab:
            return [self.vocab[word]]
        if word in self.cache:
            return self.cache[word]
        syms = list(word)
        while len(syms) > 1:
            best = None
            for i in range(len(syms) - 1):
                r = self.ranks.get((syms[i], syms[i + 1]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            i = best[1]
            syms[i:i + 2] = [syms[i] + syms[i + 1]]
        ids = [self.vocab[s] for s in syms]
        self.cache[word] = ids
        return ids

    def encode(self, data, allow_special):
        text = data.decode("utf-8", "surrogateescape")
        ids = []
        for tid, piece in self._split_added(text, self.raw_tokens, allow_special):
            if tid is not None:
                ids.append(tid)
                continue
            if self.nfc:
                piece = "".join(unicodedata.normalize("NFC", r) if v else r for r, v in runs(piece))
            for tid2, p2 in self._split_added(piece, self.norm_tokens, allow_special):
                if tid2 is not None:
                    ids.append(tid2)
                    continue
                for word in self._pretokenize(p2):
                    ids.extend(self._bpe(word))
        return ids


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    tok = RefTokenizer(sys.argv[1])
    out = []
    with open(sys.argv[2], encoding="ascii") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            flag, _, hexdata = line.partition(" ")
            ids = tok.encode(bytes.fromhex(hexdata), flag == "1")
            out.append(" ".join(map(str, ids)))
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
