/*
 * A small, safe wrapper around libjpeg(-turbo) for src/images/jpeg.rs.
 *
 * Why C: libjpeg reports errors through a callback that must not return
 * (error_exit), which means setjmp/longjmp. Keeping every libjpeg call and
 * the longjmp target in this file lets Rust see plain status codes and an
 * error message, with no unwinding across the FFI boundary.
 *
 * Decoder settings are libjpeg's defaults (islow IDCT, fancy upsampling),
 * exactly what Pillow's JpegDecode.c uses when not in draft mode, so the
 * pixels equal Pillow's bit for bit.
 */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#define TOE_MESSAGE_LEN 256

struct toe_error {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char message[TOE_MESSAGE_LEN];
    /* set when the data ended before the image did */
    int truncated;
};

struct toe_jpeg {
    struct jpeg_decompress_struct cinfo;
    struct toe_error err;
    int started;
};

/* What the Rust side learns after the header is read. */
struct toe_jpeg_info {
    int width;
    int height;
    /* 1 = grey, 3 = RGB, 4 = CMYK (as stored; Adobe files store it inverted) */
    int components;
    /* bytes per output pixel: 1 for grey, 4 for RGBX and CMYK */
    int pixel_bytes;
    /* 1 when an Adobe APP14 marker was seen (Pillow then assumes inverted CMYK) */
    int saw_adobe;
};

static void toe_error_exit(j_common_ptr cinfo) {
    struct toe_error *err = (struct toe_error *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->jump, 1);
}

/* Warnings (msg_level -1) such as "extraneous bytes before marker": libjpeg
 * goes on, and so does Pillow, so stay quiet. The exception is running out of
 * data: libjpeg pads with grey, while Pillow raises "image file is truncated",
 * so remember it and fail in toe_jpeg_read. */
static void toe_emit_message(j_common_ptr cinfo, int msg_level) {
    struct toe_error *err = (struct toe_error *)cinfo->err;
    if (msg_level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        err->truncated = 1;
    }
}

static void copy_message(char *dst, const char *src) {
    strncpy(dst, src, TOE_MESSAGE_LEN - 1);
    dst[TOE_MESSAGE_LEN - 1] = '\0';
}

void toe_jpeg_close(struct toe_jpeg *h) {
    if (h) {
        jpeg_destroy_decompress(&h->cinfo);
        free(h);
    }
}

/* Reads the header and prepares decompression. On failure returns NULL and
 * writes the reason into `message` (TOE_MESSAGE_LEN bytes). The caller keeps
 * `data` alive until toe_jpeg_close. */
struct toe_jpeg *toe_jpeg_open(
    const unsigned char *data, unsigned long size, struct toe_jpeg_info *info, char *message
) {
    /* volatile: read again after a longjmp back into this function */
    struct toe_jpeg *volatile h = calloc(1, sizeof(struct toe_jpeg));
    if (!h) {
        copy_message(message, "out of memory");
        return NULL;
    }
    h->cinfo.err = jpeg_std_error(&h->err.pub);
    h->err.pub.error_exit = toe_error_exit;
    h->err.pub.emit_message = toe_emit_message;
    if (setjmp(h->err.jump)) {
        copy_message(message, h->err.message);
        toe_jpeg_close(h);
        return NULL;
    }
    jpeg_create_decompress(&h->cinfo);
    jpeg_mem_src(&h->cinfo, data, size);
    jpeg_read_header(&h->cinfo, TRUE);

    switch (h->cinfo.num_components) {
        case 1:
            h->cinfo.out_color_space = JCS_GRAYSCALE;
            info->pixel_bytes = 1;
            break;
        case 3:
            /* Pillow asks for RGBX too: same pixels, 4-byte aligned. */
            h->cinfo.out_color_space = JCS_EXT_RGBX;
            info->pixel_bytes = 4;
            break;
        case 4:
            h->cinfo.out_color_space = JCS_CMYK;
            info->pixel_bytes = 4;
            break;
        default:
            snprintf(
                message,
                TOE_MESSAGE_LEN,
                "cannot handle %d-layer JPEG images",
                h->cinfo.num_components
            );
            toe_jpeg_close(h);
            return NULL;
    }
    info->width = (int)h->cinfo.image_width;
    info->height = (int)h->cinfo.image_height;
    info->components = h->cinfo.num_components;
    info->saw_adobe = h->cinfo.saw_Adobe_marker ? 1 : 0;
    return h;
}

/* Decodes the pixels of columns x0..x0+width and rows y0..y0+height into
 * `dst`, which holds the whole image (output_height rows of `stride` bytes);
 * other pixels of `dst` are not written, except that columns may extend to
 * iMCU boundaries. Rows above and below the region are skipped (entropy
 * decoded, so truncated data is still noticed, but not transformed).
 * libjpeg documents that a partial-width decode equals the full decode
 * except, with fancy upsampling, in the first and last column of the region:
 * callers ask for one column more on each side than they need.
 * Returns 0 on success, -1 with `message` filled in on failure. */
int toe_jpeg_read_region(
    struct toe_jpeg *h,
    unsigned char *dst,
    unsigned long stride,
    unsigned long x0,
    unsigned long y0,
    unsigned long width,
    unsigned long height,
    char *message
) {
    JDIMENSION xoffset = (JDIMENSION)x0, cropped = (JDIMENSION)width;
    int bytes_per_pixel;
    if (setjmp(h->err.jump)) {
        copy_message(message, h->err.message);
        return -1;
    }
    if (h->started) {
        copy_message(message, "JPEG decoder used twice");
        return -1;
    }
    jpeg_start_decompress(&h->cinfo);
    h->started = 1;
    bytes_per_pixel = h->cinfo.output_components;
    if (h->cinfo.out_color_space == JCS_EXT_RGBX) {
        bytes_per_pixel = 4;
    }
    if (xoffset > 0 || cropped < h->cinfo.output_width) {
        jpeg_crop_scanline(&h->cinfo, &xoffset, &cropped);
    }
    if (y0 > 0) {
        jpeg_skip_scanlines(&h->cinfo, (JDIMENSION)y0);
    }
    while (h->cinfo.output_scanline < y0 + height &&
           h->cinfo.output_scanline < h->cinfo.output_height) {
        JSAMPROW row =
            dst + (size_t)h->cinfo.output_scanline * stride + (size_t)xoffset * bytes_per_pixel;
        jpeg_read_scanlines(&h->cinfo, &row, 1);
        if (h->err.truncated) {
            copy_message(message, "image file is truncated (premature end of JPEG data)");
            return -1;
        }
    }
    if (h->cinfo.output_scanline < h->cinfo.output_height) {
        jpeg_skip_scanlines(&h->cinfo, h->cinfo.output_height - h->cinfo.output_scanline);
    }
    /* Pillow also fails when only the end-of-image marker is missing. */
    jpeg_finish_decompress(&h->cinfo);
    if (h->err.truncated) {
        copy_message(message, "image file is truncated (premature end of JPEG data)");
        return -1;
    }
    return 0;
}
