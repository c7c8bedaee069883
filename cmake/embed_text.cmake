# Writes a text file into a C++ source as one raw string literal, so a file in another
# language (the worker's Python bootstrap) is edited, linted and tested as itself.
# cmake -DINPUT=FILE -DOUTPUT=FILE.cpp -DNAMESPACE=ns -DSYMBOL=name -P embed_text.cmake
file(READ "${INPUT}" text)
set(delim "fabrik_embed")
string(FIND "${text}" ")${delim}\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains )${delim}\" and cannot be embedded as a raw string")
endif()
file(WRITE "${OUTPUT}.tmp"
     "// Generated from ${INPUT} by cmake/embed_text.cmake; do not edit.\n"
     "namespace ${NAMESPACE} {\n"
     "extern const char ${SYMBOL}[];\n"
     "const char ${SYMBOL}[] = R\"${delim}(${text})${delim}\";\n"
     "} // namespace ${NAMESPACE}\n")
# Unchanged output keeps its time stamp: no rebuild when nothing changed.
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
