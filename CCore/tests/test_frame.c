#include "ef_test.h"

#include "elasticflow.h"

void suite_frame(ef_t *t) { (void)t; }
