/* codec */
#include "internal.h"
