#ifndef CNEXUSFONT_H
#define CNEXUSFONT_H

#include <stddef.h>

// Terminus Font (OFL-1.1, see FONT-LICENSE) as PSF files, baked into the
// binary so the HUD needs no file to draw its first frame. Functions rather
// than the arrays themselves: Swift does not import arrays of unknown size.
const unsigned char *nexus_font_terminus_8x16_ptr(void);
extern const size_t nexus_font_terminus_8x16_size;
const unsigned char *nexus_font_terminus_16x32_ptr(void);
extern const size_t nexus_font_terminus_16x32_size;

#endif
