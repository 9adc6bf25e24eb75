/* tok_chat — chat prompts as text, to be encoded with allow_special.
 *
 * GLM (GLM-4.5/GLM-5 templates, shared/research/arch.md §5): no newlines
 * between role tags.
 *   "[gMASK]<sop>"
 *   system       "<|system|>" content
 *   user         "<|user|>" content
 *   assistant    "<|assistant|>" content, with "<think></think>" put in front
 *                when the content does not start with "<think>" (the template
 *                writes an empty think block for turns without reasoning)
 *   tool         "<|observation|>" (once per run of tool messages)
 *                "<tool_response>" content "</tool_response>"
 *   observation  "<|observation|>" content
 *   other roles  "<|role|>" content
 *   generation   "<|assistant|><think>" (thinking) / "<|assistant|><think></think>"
 *
 * GENERIC, when the tokenizer has <|im_start|> and <|im_end|> (ChatML):
 *   "<|im_start|>" role "\n" content "<|im_end|>\n" per message;
 *   generation "<|im_start|>assistant\n", followed by "<think>\n\n</think>\n\n"
 *   (Qwen3's way of switching thinking off) when thinking is false and the
 *   tokenizer has <think> and </think>.
 *
 * GENERIC plain-text fallback (no ChatML tokens):
 *   "System: " / "User: " / "Assistant: " (other roles: the role name with an
 *   upper-case first letter) + content + "\n\n" per message;
 *   generation "Assistant:" (no trailing space: the model writes " word"). */
#include "tokenizer/tok_internal.h"

#include <ctype.h>
#include <string.h>

static void add(tok_buf *b, const char *s)
{
    tok_buf_add(b, s, strlen(s));
}

static bool has(const dm_tokenizer *t, const char *tok)
{
    return t && dm_token_id(t, tok) >= 0;
}

dm_chat_style dm_chat_style_for(const dm_tokenizer *t)
{
    return has(t, "[gMASK]") && has(t, "<|assistant|>") ? DM_CHAT_GLM : DM_CHAT_GENERIC;
}

static void render_glm(tok_buf *b, const dm_chat_msg *msgs, int n, bool gen, bool thinking)
{
    add(b, "[gMASK]<sop>");
    for (int i = 0; i < n; i++) {
        const char *role = msgs[i].role ? msgs[i].role : "user";
        const char *content = msgs[i].content ? msgs[i].content : "";
        if (strcmp(role, "tool") == 0) {
            if (i == 0 || !msgs[i - 1].role || strcmp(msgs[i - 1].role, "tool") != 0)
                add(b, "<|observation|>");
            add(b, "<tool_response>");
            add(b, content);
            add(b, "</tool_response>");
            continue;
        }
        add(b, "<|");
        add(b, role);
        add(b, "|>");
        if (strcmp(role, "assistant") == 0 && strncmp(content, "<think>", 7) != 0)
            add(b, "<think></think>");
        add(b, content);
    }
    if (gen)
        add(b, thinking ? "<|assistant|><think>" : "<|assistant|><think></think>");
}

static void render_chatml(const dm_tokenizer *t, tok_buf *b, const dm_chat_msg *msgs, int n, bool gen,
                          bool thinking)
{
    for (int i = 0; i < n; i++) {
        add(b, "<|im_start|>");
        add(b, msgs[i].role ? msgs[i].role : "user");
        add(b, "\n");
        add(b, msgs[i].content ? msgs[i].content : "");
        add(b, "<|im_end|>\n");
    }
    if (gen) {
        add(b, "<|im_start|>assistant\n");
        if (!thinking && has(t, "<think>") && has(t, "</think>"))
            add(b, "<think>\n\n</think>\n\n");
    }
}

static void render_plain(tok_buf *b, const dm_chat_msg *msgs, int n, bool gen)
{
    for (int i = 0; i < n; i++) {
        const char *role = msgs[i].role && msgs[i].role[0] ? msgs[i].role : "user";
        char first = (char)toupper((unsigned char)role[0]);
        tok_buf_add(b, &first, 1);
        add(b, role + 1);
        add(b, ": ");
        add(b, msgs[i].content ? msgs[i].content : "");
        add(b, "\n\n");
    }
    if (gen)
        add(b, "Assistant:");
}

char *dm_chat_render(const dm_tokenizer *t, dm_chat_style style, const dm_chat_msg *msgs, int n,
                     bool add_generation_prompt, bool thinking)
{
    tok_buf b = {0};
    if (style == DM_CHAT_GLM)
        render_glm(&b, msgs, n, add_generation_prompt, thinking);
    else if (has(t, "<|im_start|>") && has(t, "<|im_end|>"))
        render_chatml(t, &b, msgs, n, add_generation_prompt, thinking);
    else
        render_plain(&b, msgs, n, add_generation_prompt);
    tok_buf_add(&b, "", 1);
    return (char *)b.p;
}
