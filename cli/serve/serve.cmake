# `xent serve`: the browser explorer (issue 8). Included from the top-level
# CMakeLists.txt inside the CLI block; adds the server, its JSON API and the
# embedded page (web/) to xent_cli.
find_package(PkgConfig REQUIRED)
# Debian's cpp-httplib is a compiled library with a pkg-config file only.
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)

file(GLOB_RECURSE XENT_WEB_FILES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/web/*)
set(XENT_WEB_ASSETS_CC ${PROJECT_BINARY_DIR}/generated/web_assets.cc)
add_custom_command(
  OUTPUT ${XENT_WEB_ASSETS_CC}
  COMMAND ${CMAKE_COMMAND} -DWEB_DIR=${PROJECT_SOURCE_DIR}/web -DOUTPUT=${XENT_WEB_ASSETS_CC}
          -P ${CMAKE_CURRENT_LIST_DIR}/embed_assets.cmake
  DEPENDS ${XENT_WEB_FILES} ${CMAKE_CURRENT_LIST_DIR}/embed_assets.cmake
  COMMENT "Embedding web/ into xent serve"
  VERBATIM)

target_sources(xent_cli PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/cmd_serve.cc
  ${CMAKE_CURRENT_LIST_DIR}/server.cc
  ${CMAKE_CURRENT_LIST_DIR}/api.cc
  ${XENT_WEB_ASSETS_CC})
target_include_directories(xent_cli PRIVATE ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(xent_cli PRIVATE PkgConfig::HTTPLIB)
