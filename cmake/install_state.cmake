# Run by cmake --install (cmake/install.cmake) when MW_SETUP_ON_INSTALL is on: what a working
# system needs beside the installed files. Each is made only when missing, so nothing an
# administrator has set up is touched.
#
# Owners are set only by root installing into the real system. Under DESTDIR the tree is for
# another machine, whose users this one does not know: directories get their modes there and
# the packager sets owners (a package does all of this in its maintainer scripts instead).

set(root "$ENV{DESTDIR}")
execute_process(COMMAND id -u OUTPUT_VARIABLE euid OUTPUT_STRIP_TRAILING_WHITESPACE)
set(set_owners FALSE)
if(root STREQUAL "" AND euid STREQUAL "0")
  set(set_owners TRUE)
endif()

# The alias file mta reads by default (mta.conf: aliases). Another MTA may have left one
# behind, whose aliases are as good for mta: keep it.
if(EXISTS "${root}/etc/aliases" OR IS_SYMLINK "${root}/etc/aliases")
  message(STATUS "Keeping existing ${root}/etc/aliases")
else()
  file(INSTALL "${MW_ALIASES_SAMPLE}" DESTINATION "/etc"
       FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endif()

# The spool's root belongs to the mail user, mode 0711 (ordinary users must reach maildrop/);
# mta makes the directories inside it itself, as that user. Without the user there is no
# right owner: mta -bd started as root creates the directory once the user exists.
set(spool "${root}${MW_SPOOLDIR}")
if(EXISTS "${spool}")
  message(STATUS "Keeping existing ${spool}")
elseif(NOT set_owners)
  message(STATUS "Creating ${spool} (mode 0711; it must belong to ${MW_MAILUSER})")
  file(MAKE_DIRECTORY "${spool}")
  file(CHMOD "${spool}" DIRECTORY_PERMISSIONS
       OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_EXECUTE WORLD_EXECUTE)
else()
  execute_process(COMMAND id -u "${MW_MAILUSER}" RESULT_VARIABLE no_user
                  OUTPUT_QUIET ERROR_QUIET)
  if(no_user)
    message(STATUS "Not creating ${spool}: no user ${MW_MAILUSER} yet. Create it (on Debian: "
                   "adduser --system --group ${MW_MAILUSER}); mta -bd started as root then "
                   "makes the spool")
  else()
    message(STATUS "Creating ${spool} (mode 0711, owner ${MW_MAILUSER})")
    file(MAKE_DIRECTORY "${spool}")
    file(CHMOD "${spool}" DIRECTORY_PERMISSIONS
         OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_EXECUTE WORLD_EXECUTE)
    execute_process(COMMAND chown "${MW_MAILUSER}:" "${spool}" COMMAND_ERROR_IS_FATAL ANY)
  endif()
endif()

# The mbox directory: users create their mailboxes and dotlocks in it through the group mail,
# hence setgid and group-writable (see mda.conf). Every Unix system has one; this is for those
# that do not yet.
set(maildir "${root}${MW_MAILDIR}")
if(EXISTS "${maildir}")
  message(STATUS "Keeping existing ${maildir}")
else()
  message(STATUS "Creating ${maildir} (mode 2775, group mail)")
  file(MAKE_DIRECTORY "${maildir}")
  # The group first: a change of group may clear the setgid bit.
  if(set_owners)
    execute_process(COMMAND chgrp mail "${maildir}" RESULT_VARIABLE no_group
                    OUTPUT_QUIET ERROR_QUIET)
    if(no_group)
      message(STATUS "No group mail: ${maildir} keeps the group of its creator")
    endif()
  endif()
  file(CHMOD "${maildir}" DIRECTORY_PERMISSIONS
       OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_WRITE GROUP_EXECUTE
       WORLD_READ WORLD_EXECUTE SETGID)
endif()
