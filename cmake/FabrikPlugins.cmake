# Kinds and sections register themselves from static initializers (flows/kind.hpp), which
# a linker drops from a static library when nothing else refers to their object file. A
# program therefore links the libraries that hold kinds (the actor kit and every driver)
# whole: fabrik_program(TARGET) links the engine that way.
function(fabrik_program target)
  get_property(drivers GLOBAL PROPERTY FABRIK_DRIVERS)
  set(whole fabrik_actors)
  foreach(d IN LISTS drivers)
    list(APPEND whole fabrik_driver_${d})
  endforeach()
  target_link_libraries(${target} PRIVATE fabrik_engine ${whole})
  # Link options come before the libraries: each archive is read whole once, up front, and
  # its plain mentions later on the line (the layers link it too) add nothing.
  foreach(lib IN LISTS whole)
    target_link_options(${target} PRIVATE
                        "LINKER:--whole-archive,$<TARGET_FILE:${lib}>,--no-whole-archive")
  endforeach()
endfunction()

# A driver is one folder under drivers/ with a CMakeLists.txt that calls fabrik_driver:
#   fabrik_driver(NAME
#     CORE_SOURCES ...    CAF-free protocol code, unit-tested alone (fabrik_driver_NAME_core)
#     CORE_LIBRARIES ...  what that code links
#     SOURCES ...         the kinds and sections (CAF actors), linked whole (fabrik_program)
#     LIBRARIES ...)      what those link
# Its tests sit in tests/drivers/NAME/ (unit) and tests/drivers/NAME/integration/ (against
# real peers); the root CMakeLists.txt picks them up when the driver is built. Each driver
# is an option, FABRIK_DRIVER_NAME (ON by default); the driver's own file turns itself off,
# with one line, when a dependency is missing (fabrik_driver_off).
function(fabrik_driver name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "CORE_SOURCES;CORE_LIBRARIES;SOURCES;LIBRARIES")
  set(target fabrik_driver_${name})
  add_library(${target} STATIC ${arg_SOURCES})
  target_link_libraries(${target} PUBLIC fabrik_actors ${arg_LIBRARIES})
  if(arg_CORE_SOURCES)
    add_library(${target}_core STATIC ${arg_CORE_SOURCES})
    target_link_libraries(${target}_core PUBLIC fabrik_core ${arg_CORE_LIBRARIES})
    target_link_libraries(${target} PUBLIC ${target}_core)
  endif()
  target_precompile_headers(${target} REUSE_FROM fabrik_actors)
  set_property(GLOBAL APPEND PROPERTY FABRIK_DRIVERS ${name})
  message(STATUS "fabrik: driver ${name} on")
endfunction()

# Says why a driver is left out of this build (one line) and leaves its folder.
macro(fabrik_driver_off name why)
  message(STATUS "fabrik: driver ${name} off: ${why}")
  return()
endmacro()
