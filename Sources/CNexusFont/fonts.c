#include "CNexusFont.h"

// #embed (C23) puts the file's bytes here at compile time: no generated
// source, and no large Swift array literal for the type checker.
static const unsigned char terminus_8x16[] = {
#embed "terminus-8x16.psf"
};
const size_t nexus_font_terminus_8x16_size = sizeof terminus_8x16;
const unsigned char *nexus_font_terminus_8x16_ptr(void) { return terminus_8x16; }

static const unsigned char terminus_16x32[] = {
#embed "terminus-16x32.psf"
};
const size_t nexus_font_terminus_16x32_size = sizeof terminus_16x32;
const unsigned char *nexus_font_terminus_16x32_ptr(void) { return terminus_16x32; }
