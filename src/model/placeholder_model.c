/* placeholder until the model stage lands */
typedef int dm_model_placeholder;
