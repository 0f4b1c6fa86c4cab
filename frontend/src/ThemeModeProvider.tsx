import { CssBaseline, ThemeProvider, createTheme } from '@mui/material';
import { useMemo, useState, type ReactNode } from 'react';
import { THEME_KEY, ThemeModeContext, initialMode, type Mode } from './themeMode';

export function ThemeModeProvider({ children }: { children: ReactNode }) {
  const [mode, setMode] = useState<Mode>(initialMode);
  const theme = useMemo(
    () =>
      createTheme({
        breakpoints: { values: { xs: 0, sm: 600, md: 900, lg: 1200, xl: 1536, wall: 2000 } },
        palette: {
          mode,
          primary: { main: mode === 'dark' ? '#64b5f6' : '#1565c0' },
          background: mode === 'dark' ? { default: '#0f1419', paper: '#171e26' } : { default: '#f4f6f8' },
        },
        shape: { borderRadius: 8 },
        typography: { fontSize: 14 },
        components: {
          MuiCard: { defaultProps: { variant: 'outlined' } },
        },
      }),
    [mode],
  );
  const value = useMemo(
    () => ({
      mode,
      toggle: () =>
        setMode((m) => {
          const next = m === 'dark' ? 'light' : 'dark';
          try {
            localStorage.setItem(THEME_KEY, next);
          } catch {
            /* ignore */
          }
          return next;
        }),
    }),
    [mode],
  );
  return (
    <ThemeModeContext.Provider value={value}>
      <ThemeProvider theme={theme}>
        <CssBaseline />
        {children}
      </ThemeProvider>
    </ThemeModeContext.Provider>
  );
}
