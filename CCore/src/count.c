/* count */
#include "internal.h"
