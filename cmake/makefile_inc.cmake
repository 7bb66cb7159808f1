# Reads KEY = value lines from Makefile.inc into MW_<KEY> cache variables, so the version and
# the install paths are written down once.
function(mw_read_makefile_inc path)
  file(STRINGS "${path}" lines REGEX "^[A-Z_]+[ \t]*=")
  foreach(line IN LISTS lines)
    string(REGEX MATCH "^([A-Z_]+)[ \t]*=[ \t]*(.*)$" _ "${line}")
    set(key "${CMAKE_MATCH_1}")
    string(STRIP "${CMAKE_MATCH_2}" value)
    set(MW_${key} "${value}" CACHE STRING "from Makefile.inc: ${key}")
  endforeach()
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${path}")
endfunction()
