/* Loaded with ctypes by the app: a plain shared library, built by make with gcc. */
long count_bits(unsigned long value) {
    long bits = 0;
    for (; value; value >>= 1) bits += value & 1;
    return bits;
}
