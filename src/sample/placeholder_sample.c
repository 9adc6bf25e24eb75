/* placeholder until the sample stage lands */
typedef int dm_sample_placeholder;
