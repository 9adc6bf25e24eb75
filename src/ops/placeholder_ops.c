/* placeholder until the ops stage lands */
typedef int dm_ops_placeholder;
