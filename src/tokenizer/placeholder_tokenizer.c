/* placeholder until the tokenizer stage lands */
typedef int dm_tokenizer_placeholder;
