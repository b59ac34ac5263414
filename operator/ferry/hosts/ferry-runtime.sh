#!/bin/sh
# ferry's runtime wrapper (registered in dockerd's daemon.json "runtimes"). It is runc, except for a
# container that ferry prepared a restore for: there containerd's `create` becomes `runc restore` from
# the images ferry streamed in (past Docker's checkpoint store), and the following `start` succeeds
# without doing anything, as the restored process already runs. Every other call goes to runc as is.
#
# A prepared restore is the directory $RESTORE_ROOT/<container id> holding `images` (a link to the
# CRIU images) and `work` (CRIU's work directory, logs included). With a file `lazy-pages` there too,
# the restore is post-copy: `runc restore --lazy-pages`, whose memory a `criu lazy-pages` daemon that
# ferry started beforehand with the same work directory (it listens on work/lazy-pages.socket) pulls
# from the source's page server; `work` is then a link to that daemon's directory.
RESTORE_ROOT=${FERRY_RESTORE_ROOT:-/var/lib/ferry/restore}  # overridden by tests only

command=""
expects_value=""
for argument do
  if [ -z "$command" ]; then
    if [ -n "$expects_value" ]; then
      expects_value=""
    else
      case $argument in
        --root|--log|--log-format|--criu|--rootless) expects_value=1 ;;
        -*) ;;
        *) command=$argument ;;
      esac
    fi
  fi
  container=$argument  # the container id is the last argument of create and start
done

prepared=$RESTORE_ROOT/$container
case $command in
  create)
    if [ -e "$prepared/images" ]; then
      replaced=""
      for argument do
        shift
        if [ -z "$replaced" ] && [ "$argument" = create ]; then
          set -- "$@" restore --detach --image-path "$prepared/images" --work-path "$prepared/work"
          if [ -e "$prepared/lazy-pages" ]; then set -- "$@" --lazy-pages; fi
          replaced=1
        else
          set -- "$@" "$argument"
        fi
      done
      : > "$prepared/restoring"
    fi ;;
  start)
    if [ -e "$prepared/restoring" ]; then
      rm -rf -- "$prepared"
      exit 0
    fi ;;
esac
exec runc "$@"
