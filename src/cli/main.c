/* placeholder: the CLI lands with the model stage */
#include <stdio.h>
int main(void) { puts("demolish"); return 0; }
