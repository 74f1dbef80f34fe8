import { useEffect, useState } from "react";
import { JobPage } from "./pages/Job";
import { JobsPage } from "./pages/Jobs";
import { NetworkPage } from "./pages/Network";
import { TrainerPage } from "./pages/Trainer";

const NAV = [
  ["#/jobs", "Jobs"],
  ["#/network", "Network"],
  ["#/trainer", "Trainer"],
] as const;

function useHash(): [string, (h: string) => void] {
  const [hash, setHash] = useState(window.location.hash || "#/jobs");
  useEffect(() => {
    const on = () => setHash(window.location.hash || "#/jobs");
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return [hash, (h) => { window.location.hash = h; }];
}

export function App({ token }: { token: string }) {
  const [hash, go] = useHash();
  const job = /^#\/jobs\/([A-Za-z0-9]{1,64})$/.exec(hash);
  let page;
  if (!token) {
    page = (
      <section>
        <h1>Not logged in</h1>
        <p>Run <code>distro-train web</code> on the daemon's machine and open the URL it prints.</p>
      </section>
    );
  } else if (job) page = <JobPage jobId={job[1]} />;
  else if (hash === "#/network") page = <NetworkPage />;
  else if (hash === "#/trainer") page = <TrainerPage />;
  else page = <JobsPage go={go} />;
  const current = job ? "#/jobs" : hash;
  return (
    <>
      <a className="skip" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById("main")?.focus(); }}>Skip to content</a>
      <header>
        <span className="brand">distro-train</span>
        <nav aria-label="Pages">
          <ul>
            {NAV.map(([href, label]) => (
              <li key={href}><a href={href} aria-current={current === href ? "page" : undefined}>{label}</a></li>
            ))}
          </ul>
        </nav>
      </header>
      <main id="main" tabIndex={-1}>{page}</main>
    </>
  );
}
