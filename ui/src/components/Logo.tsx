// The page's own mark (the same drawing as public/matrixlogo.svg): a speech
// bubble framed by the square brackets Matrix is known for.
export function Logo() {
  return (
    <svg viewBox="0 0 64 64" aria-hidden="true" focusable="false">
      <rect x="2" y="2" width="60" height="60" rx="14" fill="#05704f" />
      <path d="M14 14h6v4h-2v28h2v4h-6z M50 14h-6v4h2v28h-2v4h6z" fill="#ffffff" />
      <path d="M22 22h20a3 3 0 0 1 3 3v11a3 3 0 0 1-3 3H31l-6 5v-5h-3a3 3 0 0 1-3-3V25a3 3 0 0 1 3-3z" fill="#ffffff" />
      <circle cx="26" cy="30.5" r="2" fill="#05704f" />
      <circle cx="32" cy="30.5" r="2" fill="#05704f" />
      <circle cx="38" cy="30.5" r="2" fill="#05704f" />
    </svg>
  );
}
