/* A C extension module: it needs a compiler and Python's headers to build. */
#include <Python.h>

static PyObject *triple(PyObject *self, PyObject *args) {
    long value;
    if (!PyArg_ParseTuple(args, "l", &value)) return NULL;
    return PyLong_FromLong(value * 3);
}

static PyMethodDef methods[] = {{"triple", triple, METH_VARARGS, "Three times a number."}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "fastext", NULL, -1, methods};

PyMODINIT_FUNC PyInit_fastext(void) { return PyModule_Create(&module); }
