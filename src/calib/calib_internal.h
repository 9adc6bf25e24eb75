/* calib_internal — private to src/calib: the state one calibration run
 * shares with its observers. */
#ifndef DM_CALIB_INTERNAL_H
#define DM_CALIB_INTERNAL_H

#include "calib/calib.h"

typedef struct calib_run {
    const dm_model *model;
    dm_calib_stats *st;
    dm_gate_mode gate;
    int source;                 /* stats source of the current document (0 = only "all") */
    const double *row_weight;   /* [rows of the current forward call] token weights */
    float *scratch;             /* [2·I] expert hidden (Cerebras gates) */
    float *fbuf;                /* [D] an expert's output */
    int *itmp;                  /* [K] */
} calib_run;

void calib_on_moe(void *user, const dm_moe_obs *o);
void calib_on_linear(void *user, int layer, dm_linear which, int expert, const float *x, int T, int K,
                     const int *rows, int first_row);

#endif
