# Installation beyond the programs themselves (each program's CMakeLists.txt installs it): the
# names other software calls the MTA by, manual page links, sample configuration, service
# definitions, and the files and directories a working system needs. Included last from the
# top CMakeLists.txt, so these rules run after the programs are in place.

option(MW_SETUP_ON_INSTALL
       "at install, create /etc/aliases, the spool and the mail directory when missing (a \
package does it in its maintainer scripts instead)" ON)
# ${prefix}/lib/systemd/system is on systemd's search path for /usr and for /usr/local alike;
# a distribution whose units live elsewhere names its own place (debian/rules does).
set(MW_SYSTEMDUNITDIR "${CMAKE_INSTALL_PREFIX}/lib/systemd/system"
    CACHE PATH "where the systemd units are installed; empty: none")

# Links are made in the build tree and installed as links: install(FILES) keeps a symlink as
# it is and lists it in install_manifest.txt, which a hand-made link at install time would not.
set(MW_LINK_DIR "${CMAKE_CURRENT_BINARY_DIR}/install-links")
function(mw_install_link target destination name)
  file(MAKE_DIRECTORY "${MW_LINK_DIR}/${destination}")
  file(CREATE_LINK "${target}" "${MW_LINK_DIR}/${destination}/${name}" SYMBOLIC)
  install(FILES "${MW_LINK_DIR}/${destination}/${name}" DESTINATION "${destination}")
endfunction()

# The samples name the programs where a /usr install (a distribution package) puts them; an
# install elsewhere gets its own paths written in.
function(mw_sample_with_paths source output)
  file(READ "${source}" text)
  string(REPLACE "/usr/sbin/" "${CMAKE_INSTALL_FULL_SBINDIR}/" text "${text}")
  set(old "")
  if(EXISTS "${output}")
    file(READ "${output}" old)
  endif()
  if(NOT old STREQUAL text)
    file(WRITE "${output}" "${text}")
  endif()
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${source}")
endfunction()

# mta decides what to do by the name it is called by (mta/mta.cpp, arguments_for_name), so
# programs that run sendmail, mailq or newaliases get it. /usr/lib/sendmail is the oldest of
# those names and some programs still have it compiled in; with the prefix /usr it is
# ${prefix}/lib/sendmail, so one rule covers both (not CMAKE_INSTALL_LIBDIR: on Debian that
# is the multiarch library directory).
if(TARGET mta)
  file(RELATIVE_PATH mta_from_bin "${CMAKE_INSTALL_FULL_BINDIR}"
       "${CMAKE_INSTALL_FULL_SBINDIR}/mta")
  file(RELATIVE_PATH sendmail_from_lib "${CMAKE_INSTALL_PREFIX}/lib"
       "${CMAKE_INSTALL_FULL_SBINDIR}/sendmail")
  mw_install_link(mta "${CMAKE_INSTALL_SBINDIR}" sendmail)
  mw_install_link("${mta_from_bin}" "${CMAKE_INSTALL_BINDIR}" mailq)
  mw_install_link("${mta_from_bin}" "${CMAKE_INSTALL_BINDIR}" newaliases)
  mw_install_link("${sendmail_from_lib}" lib sendmail)
endif()

# man sendmail, man mailq and man newaliases show mta(8), which describes all three. Links
# rather than .so pages: man-db follows both, and packaging tools (dh_compress) keep links
# pointing at the compressed page.
if(EXISTS "${CMAKE_CURRENT_SOURCE_DIR}/man/mta.8")
  mw_install_link(mta.8 "${CMAKE_INSTALL_MANDIR}/man8" sendmail.8)
  mw_install_link(mta.8 "${CMAKE_INSTALL_MANDIR}/man8" newaliases.8)
  mw_install_link(../man8/mta.8 "${CMAKE_INSTALL_MANDIR}/man1" mailq.1)
endif()

# Sample configuration: installed only where none exists, so an edited file survives.
foreach(conf mda.conf mta.conf pop3d.conf)
  install(CODE "
    set(dest \"\$ENV{DESTDIR}${CMAKE_INSTALL_FULL_SYSCONFDIR}/${conf}\")
    if(EXISTS \"\${dest}\")
      message(STATUS \"Keeping existing \${dest}\")
    else()
      file(INSTALL \"${CMAKE_CURRENT_SOURCE_DIR}/etc/${conf}\"
           DESTINATION \"${CMAKE_INSTALL_FULL_SYSCONFDIR}\")
    endif()")
endforeach()

# The sample alias file is kept under the data directory too: it is what a package's
# maintainer script copies to /etc/aliases when the system has none.
install(FILES etc/aliases DESTINATION "${CMAKE_INSTALL_DATADIR}/mailwright")
mw_sample_with_paths("${CMAKE_CURRENT_SOURCE_DIR}/etc/inetd.conf"
                     "${CMAKE_CURRENT_BINARY_DIR}/samples/inetd.conf")
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/samples/inetd.conf"
        DESTINATION "${CMAKE_INSTALL_DOCDIR}/examples")

if(MW_SYSTEMDUNITDIR)
  foreach(unit mailwright-mta.service mailwright-pop3d.service)
    mw_sample_with_paths("${CMAKE_CURRENT_SOURCE_DIR}/etc/systemd/${unit}"
                         "${CMAKE_CURRENT_BINARY_DIR}/samples/${unit}")
    install(FILES "${CMAKE_CURRENT_BINARY_DIR}/samples/${unit}" DESTINATION "${MW_SYSTEMDUNITDIR}")
  endforeach()
endif()

if(MW_SETUP_ON_INSTALL)
  install(CODE "
    set(MW_ALIASES_SAMPLE \"${CMAKE_CURRENT_SOURCE_DIR}/etc/aliases\")
    set(MW_SPOOLDIR \"${MW_SPOOLDIR}\")
    set(MW_MAILDIR \"${MW_MAILDIR}\")
    set(MW_MAILUSER \"${MW_MAILUSER}\")")
  install(SCRIPT cmake/install_state.cmake)
endif()
