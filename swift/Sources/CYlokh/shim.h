/* The installed ylokh.h, found through pkg-config's Cflags (-I${includedir}). */
#include <ylokh.h>
