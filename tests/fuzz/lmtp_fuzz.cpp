// Fuzzes mda's LMTP session (mda/lmtp.h): what `mda -l` reads from the mta, which runs
// unprivileged while mda keeps root's real uid, so this parser sits on a privilege boundary.
// The input is cut into chunks at its 0x1F octets (pipelining and TCP segments split commands
// anywhere), processed with the replies taken after each chunk, then end of file. Checks that
// every reply is a CRLF-ended line of a 2xx-5xx code and a space or hyphen, and that nothing
// outside the one mailbox the account file names is ever written: the mailbox directory holds
// at most "joe" (plus its dotlock while locked), whatever the commands say. The mailbox is
// emptied before each input, so a long run does not fill the disk.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "libmail/accounts.h"
#include "libmail/mailbox_config.h"
#include "mda/delivery.h"
#include "mda/lmtp.h"
#include "mda/staging.h"

namespace {

using namespace mailwright;
using namespace mailwright::mda;

void require(bool condition) {
  if (!condition) std::abort();
}

struct World {
  std::string dir;
  std::string spool;
  std::unique_ptr<MailboxWriter> writer;
  std::unique_ptr<MessageStager> stager;
};

World& world() {
  static World* w = [] {
    auto* made = new World;
    char templ[] = "/tmp/lmtp_fuzz.XXXXXX";
    require(::mkdtemp(templ) != nullptr);
    made->dir = templ;
    made->spool = made->dir + "/mail";
    require(::mkdir(made->spool.c_str(), 0755) == 0);
    MailboxSettings settings;
    settings.mail_spool = made->spool;
    settings.file_accounts = true;
    settings.lock.timeout = std::chrono::milliseconds(10);
    auto accounts = FileAccounts::parse("joe:{PLAIN}secret\n", "accounts", ::geteuid(), ::getegid());
    require(static_cast<bool>(accounts));
    made->writer = std::make_unique<MailboxWriter>(
        settings, std::make_unique<FileAccounts>(std::move(*accounts)));
    auto stager = MessageStager::create(made->dir);
    require(static_cast<bool>(stager));
    made->stager = std::make_unique<MessageStager>(std::move(*stager));
    // libFuzzer ends with exit(): leave no directory behind in /tmp.
    std::atexit([] {
      const World& gone = world();
      for (const char* name : {"/joe", "/joe.lock"}) ::unlink((gone.spool + name).c_str());
      ::rmdir(gone.spool.c_str());
      ::rmdir(gone.dir.c_str());
    });
    return made;
  }();
  return *w;
}

void check_replies(std::string_view out) {
  while (!out.empty()) {
    const std::size_t end = out.find("\r\n");
    require(end != std::string_view::npos);
    const std::string_view line = out.substr(0, end);
    require(line.size() >= 4);
    require(line[0] >= '2' && line[0] <= '5');
    require(line[1] >= '0' && line[1] <= '9' && line[2] >= '0' && line[2] <= '9');
    require(line[3] == ' ' || line[3] == '-');
    require(line.find('\n') == std::string_view::npos && line.find('\r') == std::string_view::npos);
    out.remove_prefix(end + 2);
  }
}

void check_spool(const std::string& spool) {
  DIR* d = ::opendir(spool.c_str());
  require(d != nullptr);
  while (dirent* e = ::readdir(d)) {
    const std::string_view name = e->d_name;
    require(name == "." || name == ".." || name == "joe" || name == "joe.lock");
  }
  ::closedir(d);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  World& w = world();
  const std::string mailbox = w.spool + "/joe";
  (void)::truncate(mailbox.c_str(), 0);
  LmtpSession session(*w.writer, *w.stager, "mda.test");
  check_replies(session.greeting());
  std::string_view input(reinterpret_cast<const char*>(data), size);
  while (!session.finished()) {
    const std::size_t cut = input.find('\x1f');
    const std::string_view chunk = input.substr(0, cut);
    session.process(chunk, false);
    check_replies(session.take_replies());
    if (cut == std::string_view::npos) break;
    input.remove_prefix(cut + 1);
  }
  if (!session.finished()) {
    session.process("", true);
    check_replies(session.take_replies());
  }
  check_spool(w.spool);
  return 0;
}
