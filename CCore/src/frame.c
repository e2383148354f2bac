/* frame */
#include "internal.h"
