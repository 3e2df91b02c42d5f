"""How the API process and the scheduler's side (`Core`) run and talk: a thread or a process."""
