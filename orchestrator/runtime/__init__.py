"""How the API process and the scheduler's side (`Backend`) run and talk: a thread or a process."""
